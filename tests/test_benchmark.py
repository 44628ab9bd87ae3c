"""The bit-exact throughput benchmark runs and rejects bad options."""

import pytest

from golden import benchmark


def test_small_run_prints_pair_rates(capsys):
    assert benchmark.main(["--d", "16", "--bits", "2", "--keys", "8", "--queries", "3",
                           "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "scored 24 key-query pairs" in out
    assert "tables and scores:" in out


@pytest.mark.parametrize("argv, message", [
    (["--d", "100"], "d must be a power of two"),
    (["--bits", "5"], "bits must be in 1..4"),
    (["--keys", "0"], "--keys must be in 1..1048576, not 0"),
    (["--queries", "x"], "--queries must be an integer, not 'x'"),
    (["--repeats", "1001"], "--repeats must be in 1..1000, not 1001"),
])
def test_bad_option_exits_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
