"""The sample data generator, split by what it generates; run ../generate.py."""
