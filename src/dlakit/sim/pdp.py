"""stub"""


def run_pdp(*a):
    raise NotImplementedError
