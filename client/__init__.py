"""vocloud client: the astronomer's side (UWS jobs, VO data access, SAMP, labels)."""
