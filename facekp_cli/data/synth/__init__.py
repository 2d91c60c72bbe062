"""The synthetic face generator: shape model, face, drawing, effects, rebuild."""
