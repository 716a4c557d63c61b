"""stub"""


def run_conv(nv, group):
    raise NotImplementedError
