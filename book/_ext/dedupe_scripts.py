"""Drop duplicate <script> entries from each page.

sphinx-thebe registers its inline configuration script on every ``env-before-read-docs`` event; when a build
reads the sources twice (sphinxcontrib-bibtex does), pages get ``const THEBE_JS_URL`` twice and browsers log
"Identifier 'THEBE_JS_URL' has already been declared". The browser check in CI (scripts/check_book.py) caught it.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attributes = getattr(js, "attributes", {})
        # inline scripts are identified by their body, files by their name
        key = ("body", attributes["body"]) if attributes.get("body") else ("file", str(getattr(js, "filename", js)))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
