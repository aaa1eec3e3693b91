"""The research report's training budget in the demo, which `featuregen report` keeps on the
demo's inputs (no heavy imports: the CLI's help reads it)."""

from featuregen_assets.research.variant_names import DEFAULT_VARIANTS

# The report's learned variants in the demo: every one, plus `lit` (the encoder's recipe at the
# same budget, their reference), each at this many epochs instead of the encoder's 100. Chosen
# on the validation images (benchmarks/RESULTS.md): what 2 shared cores allow in about a minute.
DEMO_VARIANTS = ("lit", *DEFAULT_VARIANTS)
DEMO_VARIANT_EPOCHS = 30
# The report's decoders from patch tokens and from the stored vectors, at this many epochs
# (the registered decoder's: 150).
DEMO_DECODER_EPOCHS = 5
# As `launch.runs.materialize_report` takes them.
DEMO_REPORT_BUDGET = {
    "variants": DEMO_VARIANTS,
    "variant_epochs": DEMO_VARIANT_EPOCHS,
    "decoder_epochs": DEMO_DECODER_EPOCHS,
}
