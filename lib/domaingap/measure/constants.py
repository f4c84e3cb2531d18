"""The defaults of ``domaingap measure``, in one import-free module (the CLI reads them without importing torch)."""

K_MAIN = 20  # P1's MLE neighbours
K_VALUES = (5, 10, 20, 50)  # the MLE k-sensitivity set
CI_LEVEL = 0.95  # bootstrap interval level of d_data
N_BOOTSTRAP = 1000  # bootstrap resamples
NEAR_DUPLICATE_FRACTION = 0.05  # near duplicate: nearest distinct image closer than 5% of the median such distance
KF_SAMPLE_IMAGES = 1000  # P1's sampled K_F: a random subset of 1000 images, loaders of batch 500
REFERENCE_N = 1000  # images per reference dataset (class-balanced, seeded) = the common n of the comparison
REFERENCE_SEED = 0  # seeds every subsample, the bootstrap and the sampled K_F
SIZES = (28, 64, 224)  # the sizes the CLI suggests: MedMNIST's 28, the mirror's 64, P1's 224

NEAR_DUPLICATE_RULE = ("an image is a near duplicate when its nearest neighbour at non-zero distance is closer than "
                       "{fraction:g} x the median over all images of that nearest-neighbour distance")
