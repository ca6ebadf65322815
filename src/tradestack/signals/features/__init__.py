"""Pure, vectorised features (NumPy only, no I/O): daily bars (`daily`) and L2 order books (`orderbook`)."""
