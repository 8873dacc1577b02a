#!/bin/bash
# fastdump's dracut module: puts fastdump, its Python interpreter and everything a collector run
# loads into the initramfs, so kdump-utils' `core_collector fastdump ...` runs at crash time.
# Installed by `fastdump setup kdump-utils`, which writes "python" beside this file: a tiny
# script running the interpreter that ran the setup, with that fastdump importable.  The file
# list comes from fastdump itself (fastdump.deploy.payload, the list `fastdump initrd` packs).

# Only when asked for: `dracut --add fastdump` (kdump.conf: dracut_args --add fastdump).
check() {
    [[ -x $moddir/python ]] || {
        derror "fastdump: $moddir/python is missing: run 'fastdump setup kdump-utils' again"
        return 1
    }
    return 255
}

depends() {
    return 0
}

install() {
    local list kind dest src launcher
    if ! list=$("$moddir/python" -m fastdump.deploy.payload --list); then
        derror "fastdump: listing what to pack failed (see above): the initramfs would not run fastdump"
        return 1
    fi
    while IFS=$'\t' read -r kind dest src; do
        case $kind in
            file) inst_simple "$src" "$dest" || { derror "fastdump: cannot install $src"; return 1; } ;;
            link) mkdir -p "${initdir}${dest%/*}" && ln -sfn "$src" "${initdir}${dest}" ;;
            dir) inst_dir "$dest" ;;
            *) derror "fastdump: unknown entry '$kind'"; return 1 ;;
        esac
    done <<< "$list"
    # The launcher at both names kdump-utils' collector lookup may find (it installs the host's
    # `fastdump` only where nothing is yet: this module's install runs before 99kdumpbase's).
    launcher=$("$moddir/python" -m fastdump.deploy.payload --launcher) || return 1
    for dest in /usr/bin/fastdump /usr/sbin/fastdump; do
        mkdir -p "${initdir}${dest%/*}"
        rm -f "${initdir}${dest}"
        printf '%s\n' "$launcher" > "${initdir}${dest}" && chmod 0755 "${initdir}${dest}" || return 1
    done
}
