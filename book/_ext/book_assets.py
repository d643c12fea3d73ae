"""Small fixes to the HTML Jupyter Book 1.0.4 writes, so that a browser shows the book with no console errors
(tests/browser.py checks it):

- Under Sphinx 7, sphinx-thebe and sphinx-togglebutton add their inline scripts twice, once with `filename=None` and
  once with `filename=''`. A second `const THEBE_JS_URL = ...` is a SyntaxError in the browser. Each page keeps
  every script once.
- pydata-sphinx-theme's page template reads the colour mode from a `default_mode` variable that nothing in this
  theme stack sets ("Got invalid theme mode: ."). We set it to "auto": the reader's system setting.
"""


def _fix_page(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for js in context.get("script_files", []):
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key); kept.append(js)
    context["script_files"] = kept
    context.setdefault("default_mode", "auto")


def setup(app):
    app.connect("html-page-context", _fix_page, priority=900)  # after the extensions that add scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
