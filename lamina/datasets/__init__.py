"""Small data sets shipped with lamina (no download): ``lamina.datasets.karate``."""
