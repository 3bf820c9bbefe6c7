"""Features: the library (pure pandas, used by batch and live), the recipe a model carries,
labels (training only), and the Spark drivers that build the gold tables."""
