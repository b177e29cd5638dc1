"""The Worker Manager (warm-sandbox pools) and Placement."""
