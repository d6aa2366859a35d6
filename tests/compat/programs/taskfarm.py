"""A task farm as ipyparallel's tutorials write one: Cluster API, load-balanced view, dependencies,
futures and the executor. Runs unchanged on ipcluster after changing the import line."""

import concurrent.futures

import ipyparallel as ipp


def fetch(i):
    import time

    time.sleep(0.01 * (i % 3))
    return i


def combine(*parts):
    return sum(parts)


def square(x):
    return x * x


with ipp.Cluster(n=2) as rc:
    rc.wait_for_engines(2, timeout=60)
    lview = rc.load_balanced_view()

    # stage 1: independent tasks; stage 2 waits for all of them
    stage1 = [lview.apply_async(fetch, i) for i in range(8)]
    with lview.temp_flags(after=stage1):
        total = lview.apply_async(combine, *range(8))
    assert total.get(timeout=60) == 28
    assert all(ar.ready() for ar in stage1)

    # AsyncResults are futures
    done, _ = concurrent.futures.wait(stage1, timeout=60)
    assert len(done) == 8
    assert sorted(f.result() for f in concurrent.futures.as_completed(stage1)) == list(range(8))

    # the executor, and a map
    with lview.executor as ex:
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
    assert lview.map_sync(square, range(10)) == [x * x for x in range(10)]

    # a failing task raises a RemoteError naming the remote exception
    try:
        lview.apply_sync(lambda: 1 / 0)
    except ipp.error.RemoteError as e:
        assert e.ename == "ZeroDivisionError"
    else:
        raise AssertionError("no RemoteError")

    # the direct view: push, execute, pull
    dview = rc[:]
    dview.block = True
    dview.push({"base": 10})
    dview.execute("y = base + 1")
    assert dview.pull("y") == [11, 11]

print("taskfarm ok")
