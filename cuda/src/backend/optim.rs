//! Fused optimizer updates (`cuda/kernels/optim.cu`).
