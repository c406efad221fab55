"""CIFAR-10 transfer learning: AlexNet / ResNet backbones, frozen and unfrozen (`jaxnets train
transfer`).

    jaxnets train transfer --backbone alexnet|resnet18|resnet50 [--weights FILE] \\
        --data-dir DIR --out OUT [--submission]

With torchvision's ImageNet weights (`--weights alexnet.pth`, 224x224 inputs, all 10 classes) this
is the course's experiment; its goals (frozen head >= 0.85, unfrozen >= 0.93 test accuracy) need
an accelerator and those weights, and have not been measured here.

Without weights (the CPU default) the experiment pretrains its own backbone on CIFAR-10 classes
0-4, saves it with orbax, and transfers it to classes 5-9 at 64x64 pixels. Figures: README.md
here.
"""
