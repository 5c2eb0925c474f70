"""Open the built documentation site in headless Chromium and check that it renders.

Run after the build (``python -m sphinx -W --keep-going -b html docs docs/_build/html``)::

    python docs/check_site.py

Checks, each failing loudly:

* every name of every public ``__all__`` (``adaptive_jax``, ``meta``, ``schedules``,
  ``performance``, ``sharding``, ``extend``) has an entry in the API reference;
* the landing page renders, with its links to the guides, the API reference and the notebooks;
* the API page of ``adam`` renders its math (MathJax output, no TeX error, no TeX source
  left) and its ``Args`` (a parameter list naming ``learning_rate``, ``b1``, ``b2``, ``eps``);
* every notebook page shows at least one figure: an ``<img>`` that loaded with a nonzero
  natural size;
* no page raises a JavaScript error or fails to load one of its own files.

Screenshots of the landing page, the ``adam`` page and one notebook page are written to
``docs/_build/screenshots/`` (``landing.png``, ``api_adam.png``, ``notebook.png``).

The browser is Debian's ``chromium`` (``apt-get install chromium``; ``$CHROMIUM`` overrides
the path) driven by the ``playwright`` package; no browser is downloaded. The network is not
needed: requests to the MathJax CDN are answered from a local copy of the same MathJax
version (``npm pack mathjax@3.2.2``, kept in ``docs/_build/mathjax``), and every other
request outside the site is refused and reported.
"""

import importlib
import inspect
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlparse

DOCS = Path(__file__).resolve().parent
HTML = DOCS / "_build" / "html"
SHOTS = DOCS / "_build" / "screenshots"
MATHJAX_VERSION = "3.2.2"
MATHJAX_CDN = f"https://cdn.jsdelivr.net/npm/mathjax@{MATHJAX_VERSION}/"
MATHJAX_LOCAL = DOCS / "_build" / "mathjax" / MATHJAX_VERSION
NOTEBOOK_SHOWN = "trajectories_anisotropic_quadratic"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS))
import api_pages  # noqa: E402


class SiteError(AssertionError):
    """The built site does not show what it should."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SiteError(message)


def check_every_public_name_is_documented() -> int:
    """Each name of each ``__all__`` is in the site's inventory, or the same object is."""
    from sphinx.util.inventory import InventoryFile

    with open(HTML / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    documented = {
        name for kind, entries in inventory.items() if kind.startswith("py:") for name in entries
    }
    documented_ids = {id(api_pages._lookup(name)) for name in documented}
    missing = []
    count = 0
    for modname in api_pages.MODULES:
        module = importlib.import_module(modname)
        check(modname in documented, f"the module {modname} has no page in the API reference")
        for name in module.__all__:
            obj = getattr(module, name)
            count += 1
            if inspect.ismodule(obj):
                ok = obj.__name__ in documented
            else:
                ok = f"{modname}.{name}" in documented or id(obj) in documented_ids
            if not ok:
                missing.append(f"{modname}.{name}")
    check(not missing, f"public names missing from the API reference: {missing}")
    return count


def mathjax_copy() -> Path:
    """A local copy of the MathJax the pages load, from the npm registry (cached)."""
    if not (MATHJAX_LOCAL / "es5" / "tex-mml-chtml.js").exists():
        MATHJAX_LOCAL.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                ["npm", "pack", f"mathjax@{MATHJAX_VERSION}", "--pack-destination", tmp],
                check=True,
                capture_output=True,
            )
            with tarfile.open(Path(tmp) / f"mathjax-{MATHJAX_VERSION}.tgz") as archive:
                for member in archive.getmembers():
                    path = Path(member.name).relative_to("package")
                    if member.isfile() and path.parts[0] == "es5":
                        target = MATHJAX_LOCAL / path
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
    return MATHJAX_LOCAL


class Browser:
    """One Chromium profile; records JavaScript errors, failed and refused requests."""

    def __init__(self, playwright, profile: str):
        executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        check(Path(executable).exists(), f"no Chromium at {executable}: apt-get install chromium")
        self.context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        self.problems: list[str] = []
        self.mathjax = mathjax_copy()
        self.context.route("**/*", self._route)

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(MATHJAX_CDN):
            path = self.mathjax / urlparse(url).path.removeprefix(
                f"/npm/mathjax@{MATHJAX_VERSION}/"
            )
            if path.is_file():
                route.fulfill(path=str(path))
                return
            self.problems.append(f"MathJax file missing from the local copy: {url}")
            route.abort()
        elif url.startswith("file://") or url.startswith("data:"):
            route.continue_()
        else:
            self.problems.append(f"request outside the site refused: {url}")
            route.abort()

    def open(self, relative: str):
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.problems.append(f"{relative}: JS error {error}"))
        page.on(
            "requestfailed",
            lambda request: self.problems.append(f"{relative}: failed to load {request.url}"),
        )
        target = HTML / relative
        check(target.exists(), f"{target} was not built")
        page.goto(target.as_uri(), wait_until="load")
        return page


def wait_for_math(page) -> None:
    page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.evaluate("MathJax.startup.promise")
    page.wait_for_function("document.querySelectorAll('mjx-container').length > 0")


def check_landing(browser: Browser) -> None:
    page = browser.open("index.html")
    check("adaptive_jax" in page.title(), f"landing page title: {page.title()!r}")
    links = page.eval_on_selector_all("article a", "as => as.map(a => a.getAttribute('href'))")
    for wanted in ("getting_started.html", "api/index.html", "notebooks.html"):
        check(wanted in links, f"landing page has no link to {wanted}: {links}")
    page.screenshot(path=str(SHOTS / "landing.png"), full_page=True)
    page.close()


def check_api_page(browser: Browser) -> None:
    page = browser.open("api/adaptive_jax.adam.html")
    wait_for_math(page)
    rendered = page.eval_on_selector_all("article mjx-container", "els => els.length")
    errors = page.eval_on_selector_all("article mjx-merror", "els => els.map(e => e.textContent)")
    check(rendered >= 3, f"adam's page has {rendered} rendered formulas, expected its math")
    check(not errors, f"MathJax could not render on adam's page: {errors}")
    text = page.inner_text("article")
    check("\\frac" not in text and "\\hat" not in text, "TeX source left unrendered on adam's page")
    params = page.inner_text("article dl.py.function dl.field-list")
    check("parameters" in params.lower(), f"adam's page has no parameter list: {params[:200]!r}")
    for name in ("learning_rate", "b1", "b2", "eps"):
        check(name in params, f"adam's parameter list does not name {name}")
    check("example" in text.lower() and ">>>" in text, "adam's page shows no example")
    page.screenshot(path=str(SHOTS / "api_adam.png"), full_page=True)
    page.close()


def check_notebooks(browser: Browser) -> int:
    pages = sorted((HTML / "notebooks").glob("*.html"))
    check(len(pages) >= 1, "no notebook page was built")
    for path in pages:
        relative = f"notebooks/{path.name}"
        page = browser.open(relative)
        sizes = page.eval_on_selector_all(
            "article .cell_output img",
            "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])",
        )
        check(sizes, f"{relative} shows no figure")
        for complete, width, height in sizes:
            check(complete and width > 0 and height > 0, f"{relative}: a figure did not load")
        if path.stem == NOTEBOOK_SHOWN:
            page.screenshot(path=str(SHOTS / "notebook.png"), full_page=True)
        page.close()
    check((SHOTS / "notebook.png").exists(), f"the notebook {NOTEBOOK_SHOWN} was not built")
    return len(pages)


def main() -> None:
    from playwright.sync_api import sync_playwright

    check((HTML / "index.html").exists(), f"build the site first: {HTML} has no index.html")
    SHOTS.mkdir(parents=True, exist_ok=True)
    names = check_every_public_name_is_documented()
    print(f"API reference: all {names} public names of {len(api_pages.MODULES)} modules documented")
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = Browser(playwright, profile)
        check_landing(browser)
        check_api_page(browser)
        notebooks = check_notebooks(browser)
        browser.context.close()
    check(not browser.problems, "problems while loading the site:\n" + "\n".join(browser.problems))
    print(f"landing page, adam's API page and {notebooks} notebook pages render in Chromium")
    print(f"screenshots: {', '.join(str(p) for p in sorted(SHOTS.glob('*.png')))}")


if __name__ == "__main__":
    main()
