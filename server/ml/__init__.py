"""Machine learning on 1-D spectra: pure compute that job kinds call; nothing here imports the web stack."""
