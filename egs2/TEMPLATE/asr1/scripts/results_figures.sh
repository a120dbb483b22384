# shellcheck shell=bash
# results_figures.sh: plots next to a recipe-level results file (sourced by bilevel_asr.sh and
# recipes' local/ scripts). exp/ is not versioned, so a RESULTS*.md that embeds plots needs its own
# copy of them: RESULTS_x.md -> RESULTS_x_figures/<name>.png, linked relatively.

# figures_dir_of <results.md>: the figures dir of a results file (same dir, "<stem>_figures")
figures_dir_of() {
    local out=$1
    echo "$(dirname "${out}")/$(basename "${out%.md}")_figures"
}

# publish_figures <results.md> <png>...: replace <stem>_figures/ by a copy of the PNGs. The copy is
# built in <stem>_figures.tmp and moved into place, so an interrupted call never leaves a mix of
# old and new plots, and a failed copy leaves the old ones as they were.
publish_figures() {
    local out=$1 dir
    shift
    dir=$(figures_dir_of "${out}")
    rm -rf "${dir}.tmp"
    mkdir -p "${dir}.tmp"
    cp "$@" "${dir}.tmp/" || { rm -rf "${dir}.tmp"; return 1; }
    rm -rf "${dir}"
    mv "${dir}.tmp" "${dir}"
}

# figure_links <results.md> <name>...: one markdown image line (and a blank line) per named plot
# that is in the figures dir, in the order given; nothing for the missing ones.
figure_links() {
    local out=$1 dir name
    shift
    dir=$(figures_dir_of "${out}")
    for name in "$@"; do
        [ -f "${dir}/${name}.png" ] || continue
        echo "![${name}]($(basename "${dir}")/${name}.png)"
        echo
    done
}
