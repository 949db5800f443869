"""ptmspiders: Scrapy spiders that mine pre-trained model hubs into one unified schema."""

__version__ = "0.1.0"

HUBS: tuple[str, ...] = (
    "huggingface",
    "pytorch_hub",
    "onnx_zoo",
    "tfhub",
    "kaggle",
    "modelzoo",
    "modelhub",
)
