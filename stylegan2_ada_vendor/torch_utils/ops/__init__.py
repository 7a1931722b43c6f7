"""Custom neural-network ops of the host. Each op's plain PyTorch path is its definition."""
