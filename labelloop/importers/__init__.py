"""Turn image folders, CSV files and the shared benchmark datasets into manifests.

Every importer writes a JSON Lines input manifest (`MANIFEST_NAME`) and a Ground Truth
label category file (`LABEL_CATEGORY_FILE_NAME`) into its output folder, plus PNG
files under ``images/`` when the source stores images as arrays. A record's true class
name, when the source has one, is stored under `TRUE_LABEL_KEY`. Only the simulated
workforce reads that key.
"""

from labelloop.importers.common import (
    ID_KEY,
    IMAGE_EXTENSIONS,
    IMAGES_DIR_NAME,
    LABEL_CATEGORY_FILE_NAME,
    MANIFEST_NAME,
    TRUE_LABEL_KEY,
    ImportResult,
    write_label_category_file,
)
from labelloop.importers.datasets import (
    CIFAR10_CLASSES,
    DATASETS,
    DIGIT_CLASSES,
    SMS_SPAM_CLASSES,
    TREC_COARSE_CLASSES,
    clean_ag_news_text,
    import_ag_news,
    import_cifar10,
    import_dataset,
    import_digits,
    import_mnist,
    import_sms_spam,
    import_trec,
)
from labelloop.importers.files import import_csv, import_image_folder

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DIGIT_CLASSES",
    "ID_KEY",
    "IMAGES_DIR_NAME",
    "IMAGE_EXTENSIONS",
    "LABEL_CATEGORY_FILE_NAME",
    "MANIFEST_NAME",
    "SMS_SPAM_CLASSES",
    "TREC_COARSE_CLASSES",
    "TRUE_LABEL_KEY",
    "ImportResult",
    "clean_ag_news_text",
    "import_ag_news",
    "import_cifar10",
    "import_csv",
    "import_dataset",
    "import_digits",
    "import_image_folder",
    "import_mnist",
    "import_sms_spam",
    "import_trec",
    "write_label_category_file",
]
