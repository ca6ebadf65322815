"""Operations: health, readiness, version, metrics and the installation's identity."""
