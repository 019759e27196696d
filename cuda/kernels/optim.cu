// (kernels being written)
