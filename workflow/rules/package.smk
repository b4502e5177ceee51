# Which genesis_rna this workflow runs and tracks: its own checkout's, when it has one. Without
# this, a `pip install -e` of another checkout would be imported (and its code tracked by
# package_source) silently. Included before anything imports genesis_rna.
import importlib.util
import os
import sys

CHECKOUT = os.path.dirname(os.path.abspath(workflow.basedir))


def use_own_checkout():
    """Put this checkout first on sys.path when it holds the package, and say so in one line
    when that is not the genesis_rna Python would have imported (and how to make them one).
    """
    own = os.path.join(CHECKOUT, "genesis_rna", "__init__.py")
    if not os.path.isfile(own):
        return  # the workflow was copied without the package: the installed one runs
    spec = importlib.util.find_spec("genesis_rna")
    other = spec.origin if spec is not None and spec.origin else None
    if other is not None and not os.path.samefile(
        os.path.dirname(other), os.path.dirname(own)
    ):
        print(
            f"note: running genesis_rna from this checkout ({CHECKOUT}), not the one "
            f"Python finds first ({os.path.dirname(os.path.dirname(other))}); to make them "
            f"one, run `pip install -e {CHECKOUT}` or fix PYTHONPATH",
            file=sys.stderr,
        )
    if CHECKOUT not in sys.path:
        sys.path.insert(0, CHECKOUT)


use_own_checkout()
