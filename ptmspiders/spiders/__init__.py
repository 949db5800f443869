"""One spider per hub; shared arguments and paging live in :mod:`ptmspiders.spiders.base`."""
