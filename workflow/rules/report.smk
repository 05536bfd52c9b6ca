# Figures and the HTML report (`snakemake --report report.html`). Every figure is drawn by
# cscniche.pl, written as PNG (a report item; per-sample figures also as PDF with figures.sample_pdf,
# cohort and QC figures always) and has a caption in workflow/report/.
# The tissue map is made for every sample: without obsm['spatial'] it is a placeholder saying so.


rule plot_sample:
    input:
        h5ad="results/{sample}/scored.h5ad",
        neighbours="results/{sample}/immune_neighbours.tsv",
        checkpoints="results/{sample}/checkpoints.tsv",
        crosstalk="results/{sample}/crosstalk.tsv",
    output:
        **sample_pdf_outputs(),
        **sample_figure_outputs(),
    log:
        "logs/{sample}/plot_sample.log",
    benchmark:
        "logs/{sample}/plot_sample.benchmark.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 6),
        runtime=runtime(10, 0.1),
    script:
        "../scripts/plot_sample.py"


rule plot_cohort:
    input:
        cells="results/cohort/cells.tsv.gz",
        neighbours="results/cohort/immune_neighbours.tsv",
        checkpoints="results/cohort/checkpoints.tsv",
        neighbours_patients="results/cohort/immune_neighbours_patients.tsv",
        neighbours_test="results/cohort/immune_neighbours_test.tsv",
        checkpoints_patients="results/cohort/checkpoints_pseudobulk_patients.tsv",
        checkpoints_test="results/cohort/checkpoints_pseudobulk_test.tsv",
        crosstalk_patients="results/cohort/crosstalk_patients.tsv",
        crosstalk_test="results/cohort/crosstalk_test.tsv",
        burden_patients="results/cohort/csc_burden_patients.tsv",
        burden_test="results/cohort/csc_burden_immune.tsv",
    output:
        composition=report(
            "results/cohort/figures/composition.png",
            caption="../report/cohort_composition.rst",
            category="Cohort",
            labels={"figure": "Cell composition and CSC calls"},
        ),
        composition_pdf="results/cohort/figures/composition.pdf",
        neighbours=report(
            "results/cohort/figures/neighbours.png",
            caption="../report/cohort_neighbours.rst",
            category="Cohort",
            labels={"figure": "Immune neighbours of CSC across samples"},
        ),
        neighbours_pdf="results/cohort/figures/neighbours.pdf",
        checkpoints=report(
            "results/cohort/figures/checkpoints.png",
            caption="../report/cohort_checkpoints.rst",
            category="Cohort",
            labels={"figure": "Checkpoint genes, CSC vs non-CSC, across samples"},
        ),
        checkpoints_pdf="results/cohort/figures/checkpoints.pdf",
        forest_neighbours=report(
            "results/cohort/figures/forest_neighbours.png",
            caption="../report/cohort_forest.rst",
            category="Cohort",
            labels={"figure": "Patient-level effects: immune neighbours of CSC"},
        ),
        forest_neighbours_pdf="results/cohort/figures/forest_neighbours.pdf",
        forest_checkpoints=report(
            "results/cohort/figures/forest_checkpoints.png",
            caption="../report/cohort_forest.rst",
            category="Cohort",
            labels={"figure": "Patient-level effects: checkpoint genes"},
        ),
        forest_checkpoints_pdf="results/cohort/figures/forest_checkpoints.pdf",
        forest_crosstalk=report(
            "results/cohort/figures/forest_crosstalk.png",
            caption="../report/cohort_forest.rst",
            category="Cohort",
            labels={"figure": "Patient-level effects: crosstalk"},
        ),
        forest_crosstalk_pdf="results/cohort/figures/forest_crosstalk.pdf",
        burden=report(
            "results/cohort/figures/burden.png",
            caption="../report/cohort_burden.rst",
            category="Cohort",
            labels={"figure": "CSC burden vs immune composition over patients"},
        ),
        burden_pdf="results/cohort/figures/burden.pdf",
    log:
        "logs/cohort/plot_cohort.log",
    benchmark:
        "logs/cohort/plot_cohort.benchmark.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 10),
        runtime=runtime(10, 0.1),
    script:
        "../scripts/plot_cohort.py"


rule plot_qc:
    input:
        qc="results/cohort/qc.tsv",
        cells="results/cohort/cells.tsv.gz",
        coverage="results/cohort/signature_coverage.tsv",
    output:
        qc_cells=report(
            "results/cohort/figures/qc_cells.png",
            caption="../report/qc_cells.rst",
            category="QC",
            labels={"figure": "Cells per sample and QC filters"},
        ),
        qc_cells_pdf="results/cohort/figures/qc_cells.pdf",
        qc_metrics=report(
            "results/cohort/figures/qc_metrics.png",
            caption="../report/qc_metrics.rst",
            category="QC",
            labels={"figure": "QC metrics of the kept cells"},
        ),
        qc_metrics_pdf="results/cohort/figures/qc_metrics.pdf",
        signature_coverage=report(
            "results/cohort/figures/signature_coverage.png",
            caption="../report/signature_coverage.rst",
            category="QC",
            labels={"figure": "Signature genes present per sample"},
        ),
        signature_coverage_pdf="results/cohort/figures/signature_coverage.pdf",
    log:
        "logs/cohort/plot_qc.log",
    benchmark:
        "logs/cohort/plot_qc.benchmark.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=mem_mb(1000, 10),
        runtime=runtime(10, 0.1),
    script:
        "../scripts/plot_qc.py"


rule software_versions:
    output:
        html=report(
            "results/report/software_versions.html",
            caption="../report/software_versions.rst",
            category="Software and configuration",
            labels={"item": "Package versions and configuration (view)"},
        ),
        versions=report(
            "results/report/software_versions.tsv",
            caption="../report/software_versions.rst",
            category="Software and configuration",
            labels={"item": "Package versions (table)"},
        ),
        config=report(
            "results/report/config.yaml",
            caption="../report/software_versions.rst",
            category="Software and configuration",
            labels={"item": "Configuration used (YAML)"},
        ),
    log:
        "logs/report/software_versions.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        config=config,
    script:
        "../scripts/report_versions.py"


rule summary:
    input:
        qc=expand("results/{sample}/qc.tsv", sample=samples.index),
        stemness=expand("results/{sample}/stemness_summary.tsv", sample=samples.index),
        coverage=expand("results/{sample}/signature_coverage.tsv", sample=samples.index),
        scored=expand("results/{sample}/scored.h5ad", sample=samples.index),
    output:
        report(
            "results/summary.tsv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "What the run found, per sample"},
        ),
    log:
        "logs/report/summary.log",
    localrule: True
    conda:
        "../../envs/core.yaml"
    params:
        samples=samples.reset_index(drop=True).to_dict("records"),
    script:
        "../scripts/summary.py"


# Every figure and report item, for `rule all` (derived from the rules above, so the lists cannot drift).
REPORT_OUTPUTS = [
    *expand(list(rules.plot_sample.output), sample=samples.index),
    *rules.plot_cohort.output,
    *rules.plot_qc.output,
    *rules.software_versions.output,
    *rules.summary.output,
]
