"""Shared pytest options: --regen-golden rewrites the golden normalised reports."""


def pytest_addoption(parser):
    parser.addoption(
        "--regen-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*.json from the current corpus instead of comparing",
    )
