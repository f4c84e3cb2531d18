"""domaingap: kernels and experiment helpers for the medical-vs-natural-images book.

Submodules are imported explicitly (``from domaingap.kernels import distances``) so that
``import domaingap`` stays cheap: ``import torch`` alone takes tens of seconds on
small CPU machines.
"""

__version__ = "0.1.0"
