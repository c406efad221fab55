"""Image classification with CNNs: scikit-learn digits, Fashion-MNIST, CIFAR-10."""
