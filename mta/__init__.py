"""mta: a mail transfer agent in the tradition of Exim."""

__version__ = "0.1.0"
