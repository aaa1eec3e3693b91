"""No progress bars while models load: transformers draws one per model ("Loading weights:
100%|…") and huggingface_hub one per download, which a command's or benchmark's output does
not want."""

import sys


def quiet_model_loading() -> None:
    """Turn the Hugging Face libraries' progress bars off in this process, whether they are
    imported yet or not. (A child process needs HF_HUB_DISABLE_PROGRESS_BARS=1 in its
    environment instead, as `featuregen`'s entry point sets it.)"""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # what transformers reads when it is imported later
    transformers_logging = sys.modules.get("transformers.utils.logging")
    if transformers_logging is not None:
        transformers_logging.disable_progress_bar()
