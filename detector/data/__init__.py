"""Data sources, the dataset doctor, augmentation and loading."""
