"""Model names the planner tests share."""

# The issue's zoo list (item 7): kebab-case names; those not in the zoo yet are skipped.
ISSUE_ZOO = [
    "mobilenetv1",
    "googlenet",
    "inception-v4",
    "resnet101",
    "resnet152",
    "vgg19",
    "alexnet",
    "yolov3-tiny",
    "yolov5s",
]
