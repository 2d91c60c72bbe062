"""Applications of predicted points: face alignment and asset overlay."""
