"""OKX v5 public ``funding-rate`` channel for perpetual swaps."""
