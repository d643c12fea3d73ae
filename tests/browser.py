"""Drive the built book in a real browser (Playwright with Debian's chromium): every page loads without console
errors, every image and internal link resolves, search finds a word, the 3D point cloud renders. Used by
tests/test_book.py; run alone with `python tests/browser.py book/_build/html`.

The machines this runs on are offline: resources from other sites (MathJax's CDN) cannot load, and that is not
counted as the book's error; anything the book itself serves must load."""
import functools, http.server, shutil, sys, threading, urllib.error, urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse


def chromium() -> str | None:
    "Debian's chromium (the set-up installs it); Playwright's own browser download needs the internet."
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address): pass  # the browser closing a connection early is not an error


def serve(root: Path):
    "An HTTP server for `root` on a free port, in a thread: (base URL, server)."
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/", httpd


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.status
    except urllib.error.HTTPError as e: return e.code


def check_book(html: Path, word: str = "PointNet", plot_page: str = "chapters/02_point_clouds.html",
               plot_selector: str = "#pointcloud-3d .main-svg") -> dict:
    "Problems found, by kind (empty lists: none), and what was visited."
    from playwright.sync_api import sync_playwright
    base, httpd = serve(html)
    pages = sorted(str(p.relative_to(html)) for p in html.rglob("*.html") if "_static" not in p.parts)
    problems = {"console": [], "images": [], "links": [], "search": [], "plot": []}
    links = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page()
            where = {"url": ""}
            ours = lambda url: url.startswith(base)  # a page of the book or one of its files

            def console(m):  # an external resource (MathJax's CDN) cannot load offline: not the book's error
                if m.type == "error" and not (m.text.startswith("Failed to load resource") and not ours(m.location.get("url", ""))):
                    problems["console"].append(f"{where['url']}: {m.text} ({m.location.get('url')})")
            page.on("console", console)
            page.on("pageerror", lambda e: problems["console"].append(f"{where['url']}: {e}"))
            page.on("requestfailed", lambda r: ours(r.url) and "ERR_ABORTED" not in (r.failure or "")  # left behind by a navigation
                    and problems["console"].append(f"{where['url']}: failed {r.url} ({r.failure})"))
            page.on("response", lambda r: r.status >= 400 and problems["console"].append(f"{where['url']}: {r.status} {r.url}"))
            for rel in pages:
                where["url"] = rel
                page.goto(base + rel, wait_until="networkidle")  # index.html redirects: let it land
                page.evaluate("""() => Promise.all([...document.images].map(img => {  // lazy images load too
                    img.loading = "eager";
                    return img.complete ? null : new Promise(done => { img.onload = img.onerror = done; }); }))""")
                broken = page.eval_on_selector_all("img", "els => els.filter(e => !e.complete || e.naturalWidth === 0)"
                                                          ".map(e => e.getAttribute('src'))")
                problems["images"] += [f"{rel}: {src}" for src in broken]
                for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
                    target = urldefrag(href)[0]
                    if urlparse(target).netloc == urlparse(base).netloc: links.setdefault(target, rel)
            where["url"] = "search.html"
            page.goto(urljoin(base, f"search.html?q={word}"), wait_until="load")
            try: page.wait_for_selector("#search-results ul.search li", timeout=30_000)
            except Exception: problems["search"].append(f"no search result for {word!r}")
            page.wait_for_load_state("networkidle")  # the result snippets are fetched page by page
            where["url"] = plot_page
            page.goto(urljoin(base, plot_page), wait_until="load")
            try: page.wait_for_selector(plot_selector, timeout=30_000)
            except Exception: problems["plot"].append(f"{plot_page}: {plot_selector} never rendered")
            browser.close()
        problems["links"] = [f"{src} -> {url} ({code})" for url, src in links.items() if (code := _status(url)) != 200]
    finally:
        httpd.shutdown()
    return {**problems, "pages": len(pages), "internal_links": len(links)}


if __name__ == "__main__":
    out = check_book(Path(sys.argv[1] if len(sys.argv) > 1 else "book/_build/html"))
    for k, v in out.items(): print(k, v if not isinstance(v, list) else (len(v), v[:10]))
