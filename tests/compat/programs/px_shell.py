"""%%px in an IPython shell, as ipyparallel's magics tutorial uses it."""

from IPython.core.interactiveshell import InteractiveShell

import ipyparallel as ipp

shell = InteractiveShell.instance()
with ipp.Cluster(n=2) as rc:
    rc.wait_for_engines(2, timeout=60)
    rc.activate()
    shell.run_cell("%%px\nimport os\nvalue = 6 * 7\nprint('engine says', value)\n")
    shell.run_cell("%px value2 = value + 1")
    assert rc[:].pull("value2", block=True) == [43, 43]
    result = shell.run_cell("%pxresult")
    assert result.success
print("px ok")
