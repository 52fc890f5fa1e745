# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_torcx_global_optspecs
    string join \n root= json v/verbose q/quiet store= h/help V/version
end

function __fish_torcx_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_torcx_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_torcx_using_subcommand
    set -l cmd (__fish_torcx_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c torcx -n "__fish_torcx_needs_command" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_needs_command" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_needs_command" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_needs_command" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_needs_command" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_needs_command" -s V -l version -d 'Print version'
complete -c torcx -n "__fish_torcx_needs_command" -f -a "apply" -d 'Apply the next profile now: unpack and attach its images, then seal'
complete -c torcx -n "__fish_torcx_needs_command" -f -a "attach" -d 'Attach an image on the running system: NAME, NAME:REF, or the path of an archive or directory'
complete -c torcx -n "__fish_torcx_needs_command" -f -a "detach" -d 'Detach an image: remove exactly what attach placed'
complete -c torcx -n "__fish_torcx_needs_command" -f -a "reattach" -d 'Switch an attached image to another reference, all or nothing'
complete -c torcx -n "__fish_torcx_needs_command" -f -a "is-attached" -d 'Exit 0 when the image is attached, 1 when not; print its state'
complete -c torcx -n "__fish_torcx_needs_command" -f -a "status" -d 'Attachments, their units and binaries, and the last boot apply'
complete -c torcx -n "__fish_torcx_needs_command" -f -a "image" -d 'Build, list and look into images'
complete -c torcx -n "__fish_torcx_needs_command" -f -a "profile" -d 'List, check and edit profiles'
complete -c torcx -n "__fish_torcx_needs_command" -f -a "generate-docs" -d 'Write the man pages and shell completions into DIR/man and DIR/completions'
complete -c torcx -n "__fish_torcx_using_subcommand apply" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand apply" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand apply" -l force -d 'Apply again even though this boot is already sealed'
complete -c torcx -n "__fish_torcx_using_subcommand apply" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand apply" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand apply" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand attach" -l copy -d 'How to place unit files' -r -f -a "auto\t'Let torcx choose (today: copy), and record that it chose'
copy\t'Copy unit files (they survive the tree going away, and reloads see them whole)'
symlink\t'Link unit files into the image tree'"
complete -c torcx -n "__fish_torcx_using_subcommand attach" -l portable -d 'Run the image\'s services inside the image tree, with this sandbox' -r -f -a "default\t''
nonetwork\t''
strict\t''
trusted\t''"
complete -c torcx -n "__fish_torcx_using_subcommand attach" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand attach" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand attach" -l now -d 'Start the units the image enables, and wait for them'
complete -c torcx -n "__fish_torcx_using_subcommand attach" -l no-reload -d 'Do not run systemctl daemon-reload'
complete -c torcx -n "__fish_torcx_using_subcommand attach" -l force -d 'Attach even though a unit of the same name exists on the host'
complete -c torcx -n "__fish_torcx_using_subcommand attach" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand attach" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand attach" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand attach" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand detach" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand detach" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand detach" -l now -d 'Stop the image\'s units first'
complete -c torcx -n "__fish_torcx_using_subcommand detach" -l no-reload -d 'Do not run systemctl daemon-reload'
complete -c torcx -n "__fish_torcx_using_subcommand detach" -l force -d 'Detach even though its units are active, or its record cannot be read'
complete -c torcx -n "__fish_torcx_using_subcommand detach" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand detach" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand detach" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand detach" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand reattach" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand reattach" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand reattach" -l now -d 'Restart the image\'s running units, start new ones, stop removed ones'
complete -c torcx -n "__fish_torcx_using_subcommand reattach" -l no-reload -d 'Do not run systemctl daemon-reload'
complete -c torcx -n "__fish_torcx_using_subcommand reattach" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand reattach" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand reattach" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand reattach" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand is-attached" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand is-attached" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand is-attached" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand is-attached" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand is-attached" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand is-attached" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand status" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand status" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand status" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand status" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand status" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -f -a "list" -d 'Archives in the stores: name, reference, store, path, format, size'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -f -a "clear-versioned" -d 'Remove versioned user stores other than the kept versions (or only NAME\'s archives in them)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -f -a "pack" -d 'Build an archive from a directory, writing its manifest when it has none'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -f -a "inspect" -d 'Format, size, digest, manifest, what would be placed where, and lint findings'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -f -a "pull" -d 'Pull an image from an OCI registry into the user store'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -f -a "push" -d 'Publish an image to an OCI registry'
complete -c torcx -n "__fish_torcx_using_subcommand image; and not __fish_seen_subcommand_from list clear-versioned pack inspect pull push verify" -f -a "verify" -d 'Check archives against the signed remote indexes kept in the stores'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from list" -s n -l os-release -d 'List the stores of this OS version (VERSION_ID) instead of this one\'s' -r
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from list" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from list" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from clear-versioned" -s k -l keep-version -d 'A version to keep (repeatable, at least one)' -r
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from clear-versioned" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from clear-versioned" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from clear-versioned" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from clear-versioned" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from clear-versioned" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from clear-versioned" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -s o -l output -d 'The archive to write (a file, or a directory with --name)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -l format -d 'Archive format (default: from the output\'s suffix)' -r -f -a "tgz\t'gzip tar (.torcx.tgz)'
zst\t'zstd tar (.torcx.tar.zst)'
squashfs\t'squashfs, mounted (.torcx.squashfs)'
erofs\t'erofs, mounted (.torcx.erofs)'
oci\t'OCI bundle (not yet)'"
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -l name -d 'Image name: names the archive in an output directory, or checks the output\'s name' -r
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -l reference -d 'Image reference, with --name (default com.coreos.cl)' -r
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pack" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from inspect" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from inspect" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from inspect" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from inspect" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from inspect" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from inspect" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -l name -d 'The image\'s NAME[:REF]' -r
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -s n -l os-release -d 'Pull into the versioned store of this OS version (VERSION_ID)' -r
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -l timeout -d 'Seconds to wait for a connection, for an answer, and for each read' -r
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -l plain-http -d 'Speak plain HTTP to the registry'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from pull" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from push" -l timeout -d 'Seconds to wait for a connection, for an answer, and for each read' -r
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from push" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from push" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from push" -l plain-http -d 'Speak plain HTTP to the registry'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from push" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from push" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from push" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from push" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from verify" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from verify" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from verify" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from verify" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from verify" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand image; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -f -a "list" -d 'The booted lower and upper profiles, the run profile, the next profile, all profiles'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -f -a "check" -d 'Check a profile as a boot would, without changing anything'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -f -a "populate" -d 'Download the profile\'s images that name a remote and are in no store'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -f -a "new" -d 'Create a profile, empty or as a copy'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -f -a "set-next" -d 'Select the profile the next boot applies'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -f -a "use-image" -d 'Pin an image reference in a profile (default: the next profile)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and not __fish_seen_subcommand_from list check populate new set-next use-image remove-image" -f -a "remove-image" -d 'Remove an image from a profile (default: the next profile)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from list" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from list" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -l name -d 'A user profile (default: the next profile, merged as at boot)' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -l file -d 'A profile file' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -l timeout -d 'Seconds to wait for a connection, for an answer, and for each read: never for a whole download' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -l tries -d 'Tries per request; the waits between them double from one second' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -l remote-only -d 'Check only the images that name a remote, against their remote'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -l allow-unsigned -d 'Accept a remote index that is not signed'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -l name -d 'A user profile (default: the next profile)' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -l file -d 'A profile file' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -s n -l os-release -d 'Populate the versioned store of this OS version (VERSION_ID), for the next boot after an update' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -l jobs -d 'Downloads at once' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -l timeout -d 'Seconds to wait for a connection, for an answer, and for each read: never for a whole download' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -l tries -d 'Tries per request; the waits between them double from one second' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -l allow-unsigned -d 'Accept a remote index that is not signed'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from populate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -l name -d 'Create /etc/torcx/profiles/NAME.json' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -l file -d 'Create this file (must end in .json)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -l from -d 'Copy this profile' -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -l from-next -d 'Copy the next profile'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from new" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from set-next" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from set-next" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from set-next" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from set-next" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from set-next" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from set-next" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from use-image" -l name -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from use-image" -l file -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from use-image" -l allow -d '`missing`: name an image that is in no store yet' -r -f -a "missing\t''"
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from use-image" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from use-image" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from use-image" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from use-image" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from use-image" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from use-image" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from remove-image" -l name -r
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from remove-image" -l file -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from remove-image" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from remove-image" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from remove-image" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from remove-image" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from remove-image" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand profile; and __fish_seen_subcommand_from remove-image" -s h -l help -d 'Print help'
complete -c torcx -n "__fish_torcx_using_subcommand generate-docs" -l root -d 'Work under DIR instead of / (every path, including the seal); systemd is not driven' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand generate-docs" -l store -d 'An extra store directory, searched last (repeatable)' -r -F
complete -c torcx -n "__fish_torcx_using_subcommand generate-docs" -l json -d 'Print JSON (the default when stdout is not a terminal)'
complete -c torcx -n "__fish_torcx_using_subcommand generate-docs" -s v -l verbose -d 'More messages (-v info, -vv debug)'
complete -c torcx -n "__fish_torcx_using_subcommand generate-docs" -s q -l quiet -d 'Only errors'
complete -c torcx -n "__fish_torcx_using_subcommand generate-docs" -s h -l help -d 'Print help'
