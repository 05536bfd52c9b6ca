# cscniche: cancer-stem-cell scoring and immune-niche tables for single-cell tumour data.
# This file is the table of contents; rules live in workflow/rules/, logic in src/cscniche/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/stemness.smk"
include: "workflow/rules/niche.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/sample.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
        REPORT_OUTPUTS,


onsuccess:
    end_of_run(ok=True)


onerror:
    end_of_run(ok=False)
