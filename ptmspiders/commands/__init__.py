"""Project commands of ``scrapy`` (``COMMANDS_MODULE``): ``crawl`` that checks ``-a`` first."""
