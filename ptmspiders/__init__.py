"""ptmspiders: Scrapy spiders that mine pre-trained model hubs into one unified schema."""

__version__ = "0.1.0"
