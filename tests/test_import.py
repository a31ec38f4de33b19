"""``import lamina`` stays light: W5's start-up target (torch's + 0.3 s) without timing a test.

torch.compile's machinery (Dynamo ~1 s, inductor) is imported on first use, by jit_compile
or export, never by ``import lamina`` (a module-level ``@torch.compiler.disable`` or
``torch.library.custom_op`` would import Dynamo).
"""

import subprocess
import sys


def test_import_lamina_does_not_import_dynamo_or_inductor():
    code = ("import sys, lamina, lamina.layers, lamina.training.trainer; "
            "print(sorted(m for m in ('torch._dynamo', 'torch._inductor') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
