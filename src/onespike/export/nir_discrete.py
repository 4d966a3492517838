"""placeholder"""
def export_nir_discrete(*a, **k): raise NotImplementedError
