"""CIFAR-10 transfer learning: AlexNet / ResNet backbones, frozen and unfrozen (`jaxnets train
transfer`).

    jaxnets train transfer --backbone alexnet|resnet18|resnet50 [--weights FILE] \\
        --data-dir DIR --out OUT [--submission]

With torchvision's ImageNet weights (`--weights alexnet.pth`, 224x224 inputs, all 10 classes) this
is the course's experiment; its goals (frozen head >= 0.85, unfrozen >= 0.93 test accuracy) need
an accelerator and those weights, and have not been measured here.

Without weights (the CPU default) the experiment pretrains its own backbone on CIFAR-10 classes
0-4, saves it with orbax, and transfers it to classes 5-9 at 64x64 pixels. Measured on the partial
shared CIFAR-10 (5,085 train / 1,017 test images), defaults (AlexNet with the 9216-4096-1024-5
head, 8 pretraining + 5 + 5 epochs, batch 64, Adam), on a shared 2-core CPU with a load average
of 7-10 (other jobs running), 31 minutes in all:

    pretraining, classes 0-4:  source test accuracy 0.563 (494 images), 8 epochs, 1,105 s
    transfer to classes 5-9 (2,272 train / 252 val / 523 test images), chance 0.2:
    mode      test acc  val acc  val acc at epoch 0  trainable / total       s per epoch
    frozen    0.631     0.583    0.187               41,953,285 / 44,422,981  34.5
    unfrozen  0.667     0.627    0.187               44,422,981 / 44,422,981  80.4

(seconds per epoch: the mean over epochs 2-5, as epoch 1 includes compilation; on a loaded machine
they vary by 2x from epoch to epoch.) Each AlexNet run folder holds ~2.7 GB of checkpoints (the
trainer keeps the last and the best epoch, with Adam's moments of 42M parameters).
"""
