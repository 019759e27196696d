# PyTorch baseline for examples/fmnist.rs (docs/results.md): same networks, Adam lr 1e-3, batch 64, 2 threads.
# Usage: python3 examples/fmnist_torch.py mlp|cnn EPOCHS
import torch, gzip, numpy as np, time, sys
torch.set_num_threads(2); torch.manual_seed(0)
def imgs(p): return torch.tensor(np.frombuffer(gzip.open(p).read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255)
def labs(p): return torch.tensor(np.frombuffer(gzip.open(p).read(), np.uint8, offset=8).astype(np.int64))
d = "/usr/share/datasets/fashion-mnist/"
xtr, ytr, xte, yte = imgs(d + "train-images-idx3-ubyte.gz"), labs(d + "train-labels-idx1-ubyte.gz"), imgs(d + "t10k-images-idx3-ubyte.gz"), labs(d + "t10k-labels-idx1-ubyte.gz")
nn = torch.nn
model, epochs = sys.argv[1], int(sys.argv[2])
net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)) if model == "mlp" else nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
start = time.time()
for e in range(epochs):
    t = time.time(); perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 64):
        idx = perm[i:i + 64]
        opt.zero_grad(); nn.functional.cross_entropy(net(xtr[idx]), ytr[idx]).backward(); opt.step()
    tt = time.time() - t
    with torch.no_grad(): acc = sum((net(xte[i:i+1000]).argmax(1) == yte[i:i+1000]).sum().item() for i in range(0, 10000, 1000)) / 10000
    print(f"epoch {e+1}: test accuracy {100*acc:.2f}% ({tt:.1f} s train, {time.time()-start:.1f} s total)", flush=True)
