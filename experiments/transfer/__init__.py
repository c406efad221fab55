"""CIFAR-10 transfer learning: AlexNet / ResNet backbones, frozen and unfrozen (`jaxnets train
transfer`)."""
