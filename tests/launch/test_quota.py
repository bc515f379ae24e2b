"""Reading the limits on jobs queued at once from sacctmgr's parsable output (launch.quota); the dev
cluster's tests set each and submit past it (tests/slurm)."""
from collapse_hpc.launch.quota import ACCOUNT, ASSOC, QOS, Charge, Limit, enforced, limits_for, over, parse

# sacctmgr -n -P show assoc where user=ana format=Account,Partition,MaxSubmit,GrpSubmit,DefaultQOS: the user's
# own MaxSubmitJobs under collapse, the account's inherited under collapse-b, none under root
ASSOCS = "collapse||3||normal\ncollapse-b||5||\nroot||||normal\n"
# ... where user= format=Account,ParentName,GrpSubmit: the accounts' own rows
ACCOUNTS = "root||\ncollapse|root|\ncollapse-b|root|\n"
QOSES = "normal|||||\nshort|2|||\n"  # Name,MaxSubmitPU,MaxSubmitPA,GrpSubmit,Flags


def limits(job: Charge, assocs=ASSOCS, accounts=ACCOUNTS, qos=QOSES) -> list[Limit]:
    return limits_for(parse(assocs, ASSOC), parse(accounts, ACCOUNT), {q["Name"]: q for q in parse(qos, QOS)}, job)


def test_the_parsable_lines_are_read_field_by_field():
    assert parse(ASSOCS, ASSOC)[0] == {"Account": "collapse", "Partition": "", "MaxSubmit": "3", "GrpSubmit": "",
                                       "DefaultQOS": "normal"}
    assert len(parse(ASSOCS + "a warning line\n", ASSOC)) == 3
    assert parse("short|2|||DenyOnLimit,OverPartQOS\n", QOS)[0]["Flags"] == "DenyOnLimit,OverPartQOS"


def test_a_qos_limit_stands_in_for_the_associations():
    (assoc,) = limits(Charge("ana", "collapse", "", ""))  # its default QOS, normal, sets none
    assert (assoc.most, assoc.user, assoc.qos, assoc.accounts) == (3, "ana", None, {"collapse"})
    assert "MaxSubmitJobs of your association with account collapse" in assoc.where
    (short,) = limits(Charge("ana", "collapse", "short", ""))
    assert (short.most, short.qos, short.user) == (2, "short", "ana") and "MaxSubmitPU of QOS short" in short.where
    assert [limit.most for limit in limits(Charge("ana", "collapse-b", "", ""))] == [5]
    assert limits(Charge("ana", "root", "", "")) == []  # no limit
    assert limits(Charge("ana", "elsewhere", "", "")) == []  # not the user's: sbatch's refusal


def test_a_partitions_own_association_counts_the_jobs_of_that_partition():
    assocs = ASSOCS + "collapse|gpu|1||\n"
    (gpu,) = limits(Charge("ana", "collapse", "", "gpu"), assocs)
    assert (gpu.most, gpu.partition) == (1, "gpu") and "association with account collapse and partition gpu" in \
        gpu.where
    assert [(lim.most, lim.partition) for lim in limits(Charge("ana", "collapse", "", "debug"), assocs)] == [(3, None)]


def test_grp_submit_jobs_of_the_user_and_of_every_account_above_count_theirs():
    assocs = "collapse|||4|normal\n"  # the user's own GrpSubmitJobs
    accounts = "root||100\nlab|root|\ncollapse|lab|10\nsub|collapse|\nother|root|\n"
    found = limits(Charge("ana", "collapse", "", ""), assocs, accounts)
    assert [(lim.most, lim.user, lim.accounts) for lim in found] == [
        (4, "ana", {"collapse"}), (10, None, {"collapse", "sub"}), (100, None, {"root", "lab", "collapse", "sub",
                                                                                  "other"})]
    assert found[1].where.startswith("GrpSubmitJobs of account collapse: sacctmgr show assoc account=collapse")
    # a QOS's GrpSubmit stands in for every association's
    (grp,) = limits(Charge("ana", "collapse", "", ""), assocs, accounts, "normal|||7|\n")
    assert (grp.most, grp.user, grp.qos) == (7, None, "normal") and "GrpSubmit of QOS normal" in grp.where


def test_max_submit_pa_counts_the_accounts_jobs_under_the_qos():
    (pa,) = limits(Charge("ana", "root", "short", ""), qos="short||6||\n")
    assert (pa.most, pa.user, pa.accounts, pa.qos) == (6, None, {"root"}, "short")
    assert pa.counts(Charge("bo", "root", "short", "x")) and not pa.counts(Charge("bo", "root", "normal", "x"))


def test_a_partitions_qos_stands_in_for_the_jobs_own_unless_that_overrides_it():
    qos = "normal|3|||\npart|1||9|\n"
    found = limits(Charge("ana", "root", "", "gpu", "part"), qos=qos)
    assert [(lim.most, lim.user, lim.qos, lim.partition) for lim in found] == [(1, "ana", None, "gpu"),
                                                                               (9, None, None, "gpu")]
    assert found[0].where.startswith("MaxSubmitPU of QOS part, partition gpu's: sacctmgr show qos part")
    over_part = limits(Charge("ana", "root", "", "gpu", "part"), qos=qos.replace("3|||", "3|||OverPartQOS"))
    assert [(lim.most, lim.qos) for lim in over_part] == [(3, "normal"), (9, None)]


def test_a_limit_counts_the_jobs_it_names():
    assoc, qos = Limit(3, "", "", "ana", frozenset(["collapse"])), Limit(2, "", "", "ana", None, "short")
    assert assoc.counts(Charge("ana", "collapse", "short", "debug"))
    assert not assoc.counts(Charge("ana", "collapse-b", "normal", "debug"))
    assert not assoc.counts(Charge("bo", "collapse", "normal", "debug"))
    assert qos.counts(Charge("ana", "collapse-b", "short", "")) and not qos.counts(Charge("ana", "collapse", "", ""))


def test_the_refusal_says_the_numbers_and_what_to_do():
    limit = Limit(3, "MaxSubmitJobs of your association with account collapse: sacctmgr show assoc", "your jobs",
                  "ana")
    assert over(limit, 2, 1) is None
    said = over(limit, 4, 1)
    assert said.startswith("this submit would queue 4 jobs, and your jobs queued at once are limited to 3 "
                           "(MaxSubmitJobs of your association with account collapse: sacctmgr show assoc), 1 of "
                           "yours queued now, so 2 more fit: nothing was queued; submit fewer generations at a "
                           "time (--generations)"), said
    assert "so 0 more fit" in over(limit, 1, 5)
    group = over(Limit(5, "GrpSubmitJobs of account lab", "the jobs of account lab, every user's,"), 3, 4)
    assert "and the jobs of account lab, every user's, queued at once are limited to 5 (GrpSubmitJobs of account " \
           "lab), 4 queued now, so 1 more fit" in group and group.endswith("(squeue)"), group


def test_limits_are_read_only_where_slurm_enforces_them():
    assert enforced("AccountingStorageEnforce = associations,limits,qos\n")
    assert enforced("AccountingStorageEnforce = safe\n") and enforced("AccountingStorageEnforce = all\n")
    assert not enforced("AccountingStorageEnforce = associations,qos\n")
    assert not enforced("AccountingStorageEnforce = none\n") and not enforced("MaxJobCount = 10000\n")
