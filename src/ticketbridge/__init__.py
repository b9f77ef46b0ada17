"""ticketbridge: exchange trouble tickets between helpdesks that run different ticket systems."""

__version__ = "0.1.0"
