"""The bundled sample county 海屿县 and the generator of larger synthetic counties (DESIGN §8).

The API lives in `warning.sample.generate` (`sample_files`, `write_county`); it is not re-exported
here so that `python -m warning.sample.generate` runs without importing itself twice.
"""
