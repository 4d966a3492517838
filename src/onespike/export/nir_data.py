"""placeholder"""
def export_nir_data(*a, **k): raise NotImplementedError
def read_nir_data(*a, **k): raise NotImplementedError
