"""Sphinx configuration of the documentation site.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.

Stack: Sphinx + autodoc/napoleon for the API reference (the docstrings are Google style:
``Args:``, ``Returns:``, ``Example:``), MathJax for their LaTeX, and myst-nb for Markdown
pages and the notebooks, which it executes at build time from their jupytext percent
scripts (``notebooks/*.py``; ``docs/notebooks`` is a link to that folder).
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))
# The notebooks' kernels import the same working tree that autodoc documents.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import api_pages  # noqa: E402  (docs/api_pages.py: writes the API reference's pages)

project = "adaptive_jax"
author = "the adaptive_jax authors"
copyright = "the adaptive_jax authors"  # noqa: A001

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]

root_doc = "index"
exclude_patterns = [
    "_build",
    "notebooks/*.ipynb",  # the paired .ipynb has the same cells as the .py source
    "notebooks/README.md",  # included by notebooks.md
    "check_site.py",
    "api_pages.py",
    "conf.py",
]

# -- warnings are errors (build.py passes -W): every cross-reference must resolve ---------
nitpicky = True
# Names outside this package (JAX, NumPy, optax, typing) have no inventory offline: their
# references render as code without a link instead of failing the build.
nitpick_ignore_regex = [
    ("py:.*", r"(jax|jaxlib|numpy|np|jnp|optax|chex|orbax|typing|collections|enum|dataclasses|pathlib|os|subprocess)(\..*)?"),
    ("py:.*", r"(Any|Callable|Sequence|Mapping|Iterable|Iterator|NamedTuple|Literal|Optional)"),
    ("py:.*", r"(PyTree|Array|ArrayLike|DTypeLike|Params|Updates|OptState|Scalar|Numeric)"),
    ("py:class", r"(int|float|bool|str|tuple|list|dict|object|type|None|Ellipsis|callable)"),
    ("py:class", r"(optional|default.*|array|pytree|function)"),
]

# -- the API reference --------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Reference", "notes_style"), ("References", "notes_style")]
add_module_names = False
api_pages.write_pages(DOCS / "api")

# MathJax 3, pinned: docs/check_site.py renders the pages offline with this same version
# (fetched from the npm registry) in place of the CDN's.
mathjax_path = "https://cdn.jsdelivr.net/npm/mathjax@3.2.2/es5/tex-mml-chtml.js"

# -- Markdown and notebooks ---------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
myst_dmath_double_inline = True
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
# Execute every notebook at build time; "cache" re-executes only those whose code changed
# (docs/_build/.jupyter_cache), so a second build is quick. A failing cell fails the build.
nb_execution_mode = "cache"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- HTML -----------------------------------------------------------------------------------
html_theme = "furo"
html_title = "adaptive_jax"
html_static_path: list[str] = []


# -- references in docstrings to the names as the code sees them ----------------------------
# Docstrings and signatures name objects as the implementation does (``chain``,
# ``adaptive_jax._src.transforms.scaling.Scale``); each resolves to the page of the public
# name of the same object. A reference to a private helper that exists renders as code
# without a link; a reference to a name that exists nowhere stays an error.
def _resolve(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    canonical = api_pages.public_target(target, node.get("py:module"), node.get("py:class"))
    if canonical is None:
        return None
    if canonical == "":
        return contnode
    py = env.get_domain("py")
    return py.resolve_xref(env, node["refdoc"], app.builder, "obj", canonical, node, contnode)


def setup(app):
    app.connect("missing-reference", _resolve)
