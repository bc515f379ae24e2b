"""Reading the limits on jobs queued at once from sacctmgr's parsable output (launch.quota); the dev
cluster's tests set each and submit past it (tests/slurm)."""
from collapse_hpc.launch.quota import (ACCOUNT, ASSOC, QOS, Charge, Limit, enforced, hides_jobs, limits_for, over,
                                      parse, weighed)

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
    assert [(lim.most, lim.user, lim.qos, lim.partition) for lim in found] == [(1, "ana", "part", None),
                                                                               (9, None, "part", None)]
    assert found[0].where.startswith("MaxSubmitPU of QOS part, partition gpu's: sacctmgr show qos part")
    assert found[0].whose == "your jobs under QOS part"
    over_part = limits(Charge("ana", "root", "", "gpu", "part"), qos=qos.replace("3|||", "3|||OverPartQOS"))
    assert [(lim.most, lim.qos) for lim in over_part] == [(3, "normal"), (9, "part")]


def test_a_qos_counts_its_jobs_in_every_partition_it_is_the_qos_of():
    """partq, the QOS of partitions gpu and a100: its MaxSubmitPU counted the jobs of the partition the submit
    named (gpu) only. Slurm counts against a QOS every job under it, as its own QOS or as the QOS of any
    partition it is queued in (a job pending in several, each one's)."""
    qos = "normal||||\npartq|2|||\n"
    (pu,) = limits(Charge("ana", "root", "", "gpu", "partq"), qos=qos)
    assert pu.counts(Charge("ana", "root", "normal", "a100", "partq"))  # its partition's QOS, another partition
    assert pu.counts(Charge("ana", "root", "partq", "debug", "N/A"))  # its own QOS
    assert pu.counts(Charge("ana", "root", "normal", "debug,a100", "N/A,partq"))  # pending in both
    assert not pu.counts(Charge("ana", "root", "normal", "debug", "N/A"))
    assert not pu.counts(Charge("bo", "root", "partq", "gpu", "partq"))  # another user's
    # met through either partition it is one limit (the jobs of both count together), in gpu's words
    (through_a100,) = limits(Charge("ana", "root", "", "a100", "partq"), qos=qos)
    assert through_a100 == pu and {pu: 1, through_a100: 2} == {pu: 2}


def test_a_job_of_several_partitions_counts_against_the_limits_of_each():
    """partq, the QOS of gpu alone (MaxSubmitPU 2), and normal, the jobs' own (MaxSubmitPU 5) standing in scavenger:
    jobs to queue in gpu,scavenger were weighed against the limits both partitions share only, none, and sbatch
    refused the third job part-way (QOSMaxSubmitJobPerUserLimit: slurmctld counts such a job against partq, and
    against normal where partq does not stand in). A limit met in both is counted once per job."""
    tables = parse(ASSOCS, ASSOC), parse(ACCOUNTS, ACCOUNT), {q["Name"]: q for q in parse("normal|5|||\npartq|2|||\n",
                                                                                            QOS)}
    both = (Charge("ana", "", "", "gpu", "partq"), Charge("ana", "", "", "scavenger", "N/A"))
    met = weighed({both: 3, both[:1]: 1}, *tables, "collapse")
    assert sorted((lim.most, lim.qos, n) for lim, n in met.items()) == [(2, "partq", 4), (5, "normal", 3)]
    shared = (Charge("ana", "", "", "gpu", "partq"), Charge("ana", "", "", "a100", "partq"))
    assert [(lim.most, n) for lim, n in weighed({shared: 3}, *tables, "collapse").items()] == [(2, 3)]


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


def test_where_squeue_hides_other_users_jobs_a_limit_on_theirs_says_it_counted_the_least():
    """PrivateData=jobs: squeue shows a user only their own jobs, and the refusal said '4 queued now, so 1 more
    fit' of a limit on everyone's jobs, as if it had seen them all."""
    grp = Limit(5, "GrpSubmit of QOS normal: sacctmgr show qos normal format=Name,GrpSubmit", "the jobs of every user")
    said = over(grp, 3, 4, hidden=True)
    assert "limited to 5 (GrpSubmit of QOS normal: sacctmgr show qos normal format=Name,GrpSubmit), 4 queued now " \
           "that squeue shows you (PrivateData=jobs hides other users' jobs), so at most 1 more fit: nothing was " \
           "queued" in said, said
    assert over(grp, 1, 4, hidden=True) is None  # within what it shows: sbatch checks the rest
    assert hides_jobs("PrivateData = accounts,jobs\n") and hides_jobs("PrivateData=jobs\n")
    assert not hides_jobs("PrivateData = none\n") and not hides_jobs("PrivateData = jobcomp\n") and not hides_jobs("")


def test_limits_are_read_only_where_slurm_enforces_them():
    assert enforced("AccountingStorageEnforce = associations,limits,qos\n")
    assert enforced("AccountingStorageEnforce = safe\n") and enforced("AccountingStorageEnforce = all\n")
    assert not enforced("AccountingStorageEnforce = associations,qos\n")
    assert not enforced("AccountingStorageEnforce = none\n") and not enforced("MaxJobCount = 10000\n")
