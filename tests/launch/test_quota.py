"""Reading a user's limit on jobs queued at once from sacctmgr's parsable output (launch.quota); the
dev cluster's test sets one and submits past it (tests/slurm)."""
from collapse_hpc.launch.quota import Limit, enforced, limit_for, over, parse_assocs, parse_qos

# sacctmgr -n -P show assoc where user=ana format=Account,Partition,MaxSubmit,DefaultQOS: the user's own
# MaxSubmitJobs under collapse, the account's inherited under collapse-b, none under root
ASSOCS = "collapse||3|normal\ncollapse-b||5|\nroot|||normal\n"


def test_the_parsable_lines_are_read_field_by_field():
    assert parse_assocs(ASSOCS)[0] == {"Account": "collapse", "Partition": "", "MaxSubmit": "3", "DefaultQOS": "normal"}
    assert len(parse_assocs(ASSOCS + "a warning line\n")) == 3
    assert parse_qos("normal|\nshort|2\n") == {"normal": None, "short": 2}


def test_a_qos_limit_stands_in_for_the_associations():
    assocs, qos = parse_assocs(ASSOCS), parse_qos("normal|\nshort|2\n")
    assoc = limit_for(assocs, qos, "collapse", "ana", None)  # its default QOS, normal, sets none
    assert assoc is not None and (assoc.most, assoc.qos, assoc.account) == (3, None, "collapse")
    assert "MaxSubmitJobs of your association with account collapse" in assoc.where
    short = limit_for(assocs, qos, "collapse", "ana", "short")
    assert short is not None and (short.most, short.qos) == (2, "short") and "MaxSubmitPU of QOS short" in short.where
    assert limit_for(assocs, qos, "collapse-b", "ana", None).most == 5
    assert limit_for(assocs, qos, "root", "ana", None) is None  # no limit
    assert limit_for(assocs, qos, "elsewhere", "ana", None) is None  # not the user's: sbatch's refusal


def test_a_partitions_own_association_is_left_to_sbatch():
    assert limit_for(parse_assocs("collapse|gpu|1|normal\n"), {}, "collapse", "ana", None) is None


def test_an_association_counts_its_accounts_jobs_and_a_qos_its_own():
    assoc, qos = Limit(3, "", None, "collapse"), Limit(2, "", "short", "collapse")
    assert assoc.counts("collapse", "short") and not assoc.counts("collapse-b", "normal")
    assert qos.counts("collapse-b", "short") and not qos.counts("collapse", "normal")


def test_the_refusal_says_the_numbers_and_what_to_do():
    limit = Limit(3, "MaxSubmitJobs of your association with account collapse: sacctmgr show assoc", None, "c")
    assert over(limit, 2, 1) is None
    said = over(limit, 4, 1)
    assert said.startswith("this submit would queue 4 jobs, and your jobs queued at once are limited to 3 "
                           "(MaxSubmitJobs of your association with account collapse: sacctmgr show assoc), 1 of "
                           "yours queued now, so 2 more fit: nothing was queued; submit fewer generations at a "
                           "time (--generations)"), said
    assert "so 0 more fit" in over(limit, 1, 5)


def test_limits_are_read_only_where_slurm_enforces_them():
    assert enforced("AccountingStorageEnforce = associations,limits,qos\n")
    assert enforced("AccountingStorageEnforce = safe\n") and enforced("AccountingStorageEnforce = all\n")
    assert not enforced("AccountingStorageEnforce = associations,qos\n")
    assert not enforced("AccountingStorageEnforce = none\n") and not enforced("MaxJobCount = 10000\n")
