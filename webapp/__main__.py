"""The `corrigo` command (also `python -m webapp`): Flask's CLI around the app factory."""

from flask.cli import FlaskGroup

from . import create_app


def main() -> None:
    """Entry point of the `corrigo` console script."""
    FlaskGroup(create_app=create_app, help="Corrigo: keep production classifiers improving.")()


if __name__ == "__main__":
    main()
